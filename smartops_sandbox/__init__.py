"""SmartAmazon sandbox: real PostgreSQL, Redis and API processes with injectable faults."""
from .manager import Sandbox, default_ports, default_state_dir, known_faults
from .postgres_server import PostgresServer
from .redis_server import RedisServer

__all__ = ["Sandbox", "PostgresServer", "RedisServer", "default_ports", "default_state_dir", "known_faults"]
