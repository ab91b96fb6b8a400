"""Creates one new row of every model through the ORM (ids from the sequences), then prints ok.
After a load that left a sequence behind the data, the first create() collides and this fails."""
import datetime

from django.contrib.auth.models import Group, Permission, User
from django.contrib.contenttypes.models import ContentType
from django.core.management.base import BaseCommand
from django.db import transaction

from shop.models import (Author, BigPlace, Club, Country, Document, Legacy, Membership, Note,
                         PizzaPlace, Place, Profile, Restaurant, Tag)


class Command(BaseCommand):
    help = "create() one row of every model"

    def handle(self, *args, **options):
        now = datetime.datetime.now(datetime.timezone.utc)
        with transaction.atomic():
            Country.objects.create(code="ZZ", name="Zed")
            tag = Tag.objects.create(name="new-tag")
            a = Author.objects.create(email="new@example.com", name="New")
            a.friends.add(Author.objects.exclude(pk=a.pk).first())
            Profile.objects.create(author=a)
            d = Document.objects.create(title="n", body="", created=now, price=1, ratio=1, big=1,
                                        small=1, positive=1, slug="n", author=a)
            d.tags.add(tag)
            d.followers.add(Document.objects.exclude(pk=d.pk).first())
            club = Club.objects.create(name="New club")
            Membership.objects.create(club=club, author=a, since=now.date())
            Place.objects.create(name="p")
            Restaurant.objects.create(name="r")
            PizzaPlace.objects.create(name="pp")
            BigPlace.objects.create(name="proxy")
            Legacy.objects.create(code="n")
            Note.objects.create(content_type=ContentType.objects.get_for_model(Tag),
                                object_id=str(tag.pk), text="n")
            ContentType.objects.create(app_label="zz", model="new")
            Permission.objects.create(codename="zz", name="zz",
                                      content_type=ContentType.objects.get_for_model(Tag))
            g = Group.objects.create(name="new-group")
            g.permissions.add(Permission.objects.first())
            u = User.objects.create_user("newuser")
            u.groups.add(g)
            u.user_permissions.add(Permission.objects.first())
        self.stdout.write("ok")
