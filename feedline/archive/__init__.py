"""The raw event archive in object storage: the source of truth for rebuilds.

``layout`` names partitions and part objects; ``store`` writes and reads them.
"""
