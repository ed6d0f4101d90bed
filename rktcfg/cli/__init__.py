"""The command line: ``main`` parses, one module per command runs it (imported only then)."""
