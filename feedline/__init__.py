"""feedline's shared core: settings, pure feed rules and store adapters.

Used alike by the streaming and batch pipelines, the API and the `feedctl` CLI.
"""
