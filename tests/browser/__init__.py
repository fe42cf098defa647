"""The widget and the console in a real browser (Debian Chromium driven by Playwright)."""
