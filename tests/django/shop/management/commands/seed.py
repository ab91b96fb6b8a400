"""Fills every model with rows covering the value forms and relations the interop tests check."""
import datetime
import decimal
import uuid

from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand

from shop.models import (Author, Club, Country, Document, Legacy, Membership, Note, PizzaPlace,
                         Place, Profile, Restaurant, Tag)


class Command(BaseCommand):
    help = "Seed the interop tests' data"

    def handle(self, *args, **options):
        utc = datetime.timezone.utc
        fr = Country.objects.create(code="FR", name="France")
        Country.objects.create(code="JP", name="Japan")
        tags = [Tag.objects.create(name=n) for n in ("red", "green", "blue")]
        a1 = Author.objects.create(email="ada@example.com", name="Ada", country=fr)
        a2 = Author.objects.create(email="bob@example.com", name="Bob \"quoted\"\nnewline", mentor=a1)
        a3 = Author.objects.create(email="cy@example.com", name="Çy ünïcode ☃")
        a1.friends.add(a2, a3)
        Profile.objects.create(author=a1, bio="tab\there")
        d1 = Document.objects.create(
            id=uuid.UUID("12345678-1234-5678-1234-567812345678"),
            title="First", body="x" * 300,
            created=datetime.datetime(2024, 3, 5, 14, 7, 9, 123456, tzinfo=utc),
            published_on=datetime.date(2024, 3, 5), at_time=datetime.time(8, 30, 15, 250000),
            price=decimal.Decimal("1234.50"), ratio=0.1, big=-9223372036854775808, small=-32768,
            positive=2147483647, active=True, maybe=None,
            took=datetime.timedelta(days=-1, hours=2, microseconds=5),
            ref=uuid.UUID("87654321-4321-8765-4321-876543218765"), blob=b"\x00\x01\xffbin",
            data={"a": [1, 2.5, None, True], "b": {"c": "d"}, "$json": 1}, labels=["x", "y,z", "q\"uote"],
            scores=[1, -2, 3], slug="first", site="https://example.com/a?b=c", ip="2001:db8::1",
            author=a2)
        d2 = Document.objects.create(
            id=uuid.UUID("fa2c149a-cf65-45b6-868b-a2213b9f87aa"),
            title="Second", body="", created=datetime.datetime(1999, 12, 31, 23, 59, 59, tzinfo=utc),
            price=decimal.Decimal("-0.01"), ratio=-1e-10, big=0, small=0, positive=0, active=False,
            maybe=True, took=datetime.timedelta(seconds=90), data=[1, "two"], labels=[], scores=None,
            slug="second", author=a1, ip="10.0.0.1")
        d1.tags.add(tags[0], tags[2])
        d2.tags.add(tags[1])
        d1.followers.add(d2)
        club = Club.objects.create(name="Chess")
        Membership.objects.create(club=club, author=a1, since=datetime.date(2020, 1, 1))
        Membership.objects.create(club=club, author=a3, since=datetime.date(2021, 2, 2))
        Place.objects.create(name="Park")
        Restaurant.objects.create(name="Bistro", serves_pizza=False, seats=20)
        PizzaPlace.objects.create(name="Luigi's", serves_pizza=True, seats=40, oven="electric")
        Legacy.objects.create(code="L1")
        Note.objects.create(content_type=ContentType.objects.get_for_model(Document),
                            object_id=str(d1.pk), text="about the first document")
        Note.objects.create(content_type=ContentType.objects.get_for_model(Author),
                            object_id=str(a3.pk), text="about Cy")
        editors = Group.objects.create(name="editors")
        editors.permissions.add(*Permission.objects.filter(content_type__app_label="shop",
                                                           codename__startswith="change_"))
        u = User.objects.create_user("alice", "alice@example.com", "pw",
                                     first_name="Alice", is_staff=True)
        u.groups.add(editors)
        u.user_permissions.add(Permission.objects.get(codename="view_note"))
        User.objects.create_superuser("root", "root@example.com", "pw")
