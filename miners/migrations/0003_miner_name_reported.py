"""Miners get a name, unique per owner (the original dialect's `miner_id`; registering again under it updates the
same miner), a `reported` object, and an optional payout address. A miner registered before has no name: it is
given its id, which is stable and already unique."""

from django.db import migrations, models


def name_existing_miners(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    # In Python rather than a cast in SQL: SQLite stores a UUID as 32 bare hex digits, and the name must be the id
    # as the API writes it.
    Miner = apps.get_model("miners", "Miner")
    unnamed = list(Miner.objects.filter(name__isnull=True).only("id"))
    for miner in unnamed:
        miner.name = str(miner.pk)
    Miner.objects.bulk_update(unnamed, ["name"], batch_size=500)


class Migration(migrations.Migration):
    dependencies = [("miners", "0002_miner_disabled_at_miner_disabled_by")]

    operations = [
        migrations.AddField(model_name="miner", name="name", field=models.CharField(max_length=100, null=True)),
        migrations.RunPython(name_existing_miners, migrations.RunPython.noop),
        migrations.AlterField(model_name="miner", name="name", field=models.CharField(max_length=100)),
        migrations.AddField(
            model_name="miner", name="reported", field=models.JSONField(blank=True, default=dict)
        ),
        migrations.AlterField(
            model_name="miner", name="address", field=models.CharField(blank=True, max_length=44, null=True)
        ),
        migrations.AddConstraint(
            model_name="miner",
            constraint=models.UniqueConstraint(fields=("owner", "name"), name="miner_owner_name_unique"),
        ),
    ]
