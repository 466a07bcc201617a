"""Everything about an agent's process: its policy, the launcher that applies it
before any agent code runs, the child-side runtime, and killing the whole tree."""
