"""UI testing: stored screenshots, visual baselines and diffs, accessibility audits, replayable scenarios."""
