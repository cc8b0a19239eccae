from strategies._registry import Registry
from strategies.store.base import MessageStore, UserStore

USER_STORES: Registry[UserStore] = Registry(
    "store.users", {"sqlite": "strategies.store.sqlite:SqliteUserStore"}
)
MESSAGE_STORES: Registry[MessageStore] = Registry(
    "store.messages", {"sqlite": "strategies.store.sqlite:SqliteMessageStore"}
)
