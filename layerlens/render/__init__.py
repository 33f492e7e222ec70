"""Output of a Trace: tables, JSON (and, later, diagrams). Each a last step
that reads records and never touches a model."""
