from marshmallow import Schema, fields

from medianest_server.plugin_api import hookimpl


class Settings(Schema):
    url = fields.Url(required=True)
    timeout_seconds = fields.Float(load_default=5.0)


@hookimpl
def medianest_config_schema() -> type[Schema]:
    return Settings
