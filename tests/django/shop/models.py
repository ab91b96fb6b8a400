"""Models covering what Django fixtures carry: every common field type, FK to a non-pk
to_field, self FK, one-to-one, m2m (auto, self, explicit through), multi-table inheritance, a
proxy, a custom db_table, UUID and char primary keys, a generic foreign key."""
import uuid

from django.contrib.contenttypes.fields import GenericForeignKey
from django.contrib.contenttypes.models import ContentType
from django.contrib.postgres.fields import ArrayField
from django.db import models


class Country(models.Model):
    # char primary key
    code = models.CharField(max_length=2, primary_key=True)
    name = models.CharField(max_length=100)


class Tag(models.Model):
    name = models.CharField(max_length=50, unique=True)


class Author(models.Model):
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=100)
    country = models.ForeignKey(Country, null=True, on_delete=models.SET_NULL)
    mentor = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL)
    friends = models.ManyToManyField("self", blank=True)  # symmetrical self m2m


class Profile(models.Model):
    author = models.OneToOneField(Author, on_delete=models.CASCADE)
    bio = models.TextField(blank=True)


class Document(models.Model):
    # UUID primary key; every value form
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    title = models.CharField(max_length=200)
    body = models.TextField()
    created = models.DateTimeField()
    published_on = models.DateField(null=True)
    at_time = models.TimeField(null=True)
    price = models.DecimalField(max_digits=10, decimal_places=2)
    ratio = models.FloatField()
    big = models.BigIntegerField()
    small = models.SmallIntegerField()
    positive = models.PositiveIntegerField()
    active = models.BooleanField(default=True)
    maybe = models.BooleanField(null=True)
    took = models.DurationField(null=True)
    ref = models.UUIDField(null=True)
    blob = models.BinaryField(null=True)
    data = models.JSONField(null=True)
    labels = ArrayField(models.CharField(max_length=20), default=list)
    scores = ArrayField(models.IntegerField(), null=True)
    slug = models.SlugField()
    site = models.URLField(blank=True)
    ip = models.GenericIPAddressField(null=True)
    # FK to a non-pk to_field
    author = models.ForeignKey(Author, to_field="email", on_delete=models.CASCADE)
    tags = models.ManyToManyField(Tag, blank=True)
    followers = models.ManyToManyField("self", symmetrical=False, blank=True, related_name="following")


class Club(models.Model):
    name = models.CharField(max_length=50)
    members = models.ManyToManyField(Author, through="Membership", blank=True, related_name="clubs")


class Membership(models.Model):
    # an explicit through model: an ordinary model
    club = models.ForeignKey(Club, on_delete=models.CASCADE)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
    since = models.DateField()


class Place(models.Model):
    name = models.CharField(max_length=50)


class Restaurant(Place):
    # multi-table inheritance child: only its own fields
    serves_pizza = models.BooleanField(default=False)
    seats = models.IntegerField(default=0)


class PizzaPlace(Restaurant):
    # grandchild
    oven = models.CharField(max_length=20, default="wood")


class BigPlace(Place):
    class Meta:
        proxy = True


class Legacy(models.Model):
    # custom db_table
    code = models.CharField(max_length=10)

    class Meta:
        db_table = "legacy_things"


class Note(models.Model):
    # generic foreign key
    content_type = models.ForeignKey(ContentType, on_delete=models.CASCADE)
    object_id = models.CharField(max_length=64)
    target = GenericForeignKey("content_type", "object_id")
    text = models.CharField(max_length=100)
