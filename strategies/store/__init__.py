from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

from strategies._registry import Registry
from strategies.context import StrategyContext
from strategies.store.base import MessageStore, UserStore
from strategies.store.config import StoreConfig

if TYPE_CHECKING:
    from strategies.store.archive import Archive

USER_STORES: Registry[UserStore] = Registry(
    "store.users",
    {
        "sqlite": "strategies.store.sqlite.users:SqliteUserStore",
        "mysql": "strategies.store.mysql.users:MysqlUserStore",
    },
    extras={"mysql": "mysql"},
)
MESSAGE_STORES: Registry[MessageStore] = Registry(
    "store.messages",
    {
        "sqlite": "strategies.store.sqlite.messages:SqliteMessageStore",
        "mysql": "strategies.store.mysql.messages:MysqlMessageStore",
        "mongo": "strategies.store.mongo.messages:MongoMessageStore",
    },
    extras={"mysql": "mysql", "mongo": "mongo"},
)
# Object stores for the cold tier.
ARCHIVES: Registry[Archive] = Registry(
    "store.tiering.cold",
    {
        "local": "strategies.store.archive:LocalArchive",
        "s3": "strategies.store.s3:S3Archive",
    },
    extras={"s3": "s3"},
)


def build_message_store(config: StoreConfig, ctx: StrategyContext) -> MessageStore:
    """The message store the services use: the configured store, wrapped in the tiered reader when tiering is on
    (strategies/store/tiered.py)."""
    hot = MESSAGE_STORES.create(config.messages, ctx)
    if not config.tiering.enabled:
        return hot
    from strategies.store.tiered import TieredMessageStore

    tiering = config.tiering
    warm = MESSAGE_STORES.create(tiering.warm, ctx)
    archive = ARCHIVES.create(tiering.cold, ctx)
    return TieredMessageStore(cast("Any", hot), cast("Any", warm), archive, tiering, ctx)
