"""The one definition of each spec: tasks, action spaces, action vocabulary, FAST, normalisation, prompts,
rewards, the policy's input/output types, topic names, folder kinds and the strict loader every spec file goes
through. The lowest layer: it imports no other part of RoboAlign."""
