"""Rule tests (`engine test`): given users and events, at T, expect fires, actions and reasons.

In the spirit of `promtool test rules`. A test file (tests/*.yaml) gives users, events and one
or more steps (`at` + `expect`, or `steps:`). Each test runs in its own fresh SQLite database:
the rows are ingested with the same checks as `engine ingest`, then every step commits one tick
of the tested rules through the real planner (`engine.commit.tick`: audience, triggers, on_enter
state, experiments, limits, caps, consent, quiet hours, budgets), so state carries from step to
step exactly as it does in production. Nothing is delivered.

Matching is exact for the tested rules: at each step, every (rule, user) that fires must be
expected with `fire: true`, and every expectation must hold. An empty `expect` therefore means
"nothing fires". See docs/testing-rules.md.
"""
