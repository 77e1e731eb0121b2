"""The process-based local stack: Kafka, Cassandra, Redis, GCS emulator and Flink on loopback."""
