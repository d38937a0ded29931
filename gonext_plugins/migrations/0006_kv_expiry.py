# kv.set's ttlSeconds (issue #16): the instant a key starts reading as absent.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('gonext_plugins', '0005_job_payload_bytes'),
    ]

    operations = [
        migrations.AddField(
            model_name='pluginkv',
            name='expires_at',
            field=models.DateTimeField(blank=True, db_index=True, help_text="kv.set's ttlSeconds: from then on the key reads as absent (null: never expires)", null=True),
        ),
    ]
