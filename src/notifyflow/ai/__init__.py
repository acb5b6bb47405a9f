"""AI providers behind one interface: OpenAI (any compatible endpoint) and an offline one."""
