"""The paper's English intermediate tasks (Phang et al. 2020)."""
