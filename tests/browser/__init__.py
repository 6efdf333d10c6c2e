"""Real-browser tests: headless Chromium against a real `wakedock serve`."""
