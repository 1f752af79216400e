from types import ModuleType

# yakvs.raft.loop swaps this for a lighter stand-in (install_light_compression).
zlib: ModuleType | type
