// Package browsertest holds the tests of the farmer's login in a real browser:
// headless Chromium, driven with chromedp, goes through `coop-proxy login`
// against the COOP emulator as a farmer would. It has no code of its own; the
// tests use only the built binary, the emulator's exported API and the store's.
package browsertest
