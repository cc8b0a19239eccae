from strategies._registry import Registry
from strategies.files.base import FileStorage

REGISTRY: Registry[FileStorage] = Registry("files", {"local": "strategies.files.local:LocalFileStorage"})
