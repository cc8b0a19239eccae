from strategies._registry import Registry
from strategies.store.base import MessageStore, UserStore

USER_STORES: Registry[UserStore] = Registry(
    "store.users",
    {
        "sqlite": "strategies.store.sqlite:SqliteUserStore",
        "mysql": "strategies.store.mysql:MysqlUserStore",
    },
    extras={"mysql": "mysql"},
)
MESSAGE_STORES: Registry[MessageStore] = Registry(
    "store.messages",
    {
        "sqlite": "strategies.store.sqlite:SqliteMessageStore",
        "mysql": "strategies.store.mysql:MysqlMessageStore",
        "mongo": "strategies.store.mongo:MongoMessageStore",
    },
    extras={"mysql": "mysql", "mongo": "mongo"},
)
