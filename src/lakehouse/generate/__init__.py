"""Deterministic, streaming generator of an Eco2 lake exactly as Debezium 3.6.3 (PostgreSQL) and the
Kafka Connect S3 sink would write it (spec lake-format.md, eco2-domain.md)."""

from lakehouse.generate.options import GeneratorOptions
from lakehouse.generate.run import GenerationReport, generate_lake

__all__ = ["GenerationReport", "GeneratorOptions", "generate_lake"]
