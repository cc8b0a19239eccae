from strategies._registry import Registry
from strategies.context import StrategyContext
from strategies.files.base import FileStorage
from strategies.files.config import FilesConfig

REGISTRY: Registry[FileStorage, StrategyContext] = Registry("files", FilesConfig)
