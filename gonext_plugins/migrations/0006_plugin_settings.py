"""Plugin settings: the values an admin set, and who may change them."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('gonext_plugins', '0005_job_payload_bytes'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='plugin',
            options={'ordering': ['slug'], 'permissions': [('install_plugin', 'Can install, upgrade, roll back and uninstall plugins'), ('activate_plugin', 'Can activate and deactivate plugins'), ('grant_capability', 'Can grant and revoke plugin capabilities'), ('view_plugin_logs', 'Can watch plugin logs'), ('change_plugin_settings', 'Can change plugin settings')]},
        ),
        migrations.AddField(
            model_name='plugin',
            name='settings',
            field=models.JSONField(blank=True, default=dict, help_text="values an admin set (lifecycle.settings); defaults not stored"),
        ),
    ]
