"""The data layer: D4RL/Minari conversion, generated data, Parquet shards, readers.

``python -m diffcps_ray.data {generate,convert,inspect}``; the library API lives in
``diffcps_ray.data.shards`` (write/read) and ``diffcps_ray.data.schema`` (format).
"""
