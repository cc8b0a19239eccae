from strategies._registry import Registry
from strategies.ids.base import IdGenerator

REGISTRY: Registry[IdGenerator] = Registry("ids", {"snowflake": "strategies.ids.snowflake:SnowflakeIds"})
