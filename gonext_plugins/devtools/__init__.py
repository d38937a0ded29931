"""Developer tools: building plugins from source. Nothing here imports Django."""
