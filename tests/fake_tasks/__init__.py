"""Task packages that exist only for tests (registered with Engine(tasks=...) or engine.tasks[...])."""
