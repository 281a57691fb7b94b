#!/usr/bin/env bash
# End to end on the embedded default (SQLite, local artifact store, jobs in-process):
# register two example models, let regctl pick and prove the right TorchScript method, fetch the
# artifacts (each checked against the attestation the registry signed) and run them with
# torch.jit.load in a process that never sees the model code.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
export REGCTL_HOME="${REGCTL_HOME:-$(dirname "$here")/demo-home}"
unset REGCTL_DATABASE_URL REGCTL_BROKER_URL REGCTL_ARTIFACT_STORE
rm -rf "$REGCTL_HOME"
out="$(mktemp -d)"

echo "== the registry's signing key: every proved artifact gets a signed attestation"
regctl keys init
regctl keys show --json | python -c "import json, sys; print(json.load(sys.stdin)[0]['public_pem'], end='')" > "$out/registry.pub"

echo "== register examples/conditional: trace would freeze one branch, so script must win"
regctl register conditional "$here/conditional" --wait
echo "== register examples/linear"
regctl register linear "$here/linear" --wait
regctl alias set linear@prod 1
regctl models list
regctl versions show conditional:1

echo "== fetch and run without the model code"
regctl fetch conditional -o "$out/conditional.pt" --key "$out/registry.pub"
regctl fetch linear@prod -o "$out/linear.pt" --key "$out/registry.pub"
regctl verify "$out/linear.pt" --key "$out/registry.pub"   # offline: the public key alone
(cd "$out" && python - <<'PY'
import torch

cond = torch.jit.load("conditional.pt")
x = torch.tensor([[1.0, -2.0, 3.0, 0.5, -0.5, 2.0, 1.0, -1.0]])
assert torch.equal(cond(x), torch.relu(x)), "positive sum should take the relu branch"
assert torch.equal(cond(-x), x), "negative sum should take the negation branch"
lin = torch.jit.load("linear.pt")
print("conditional.pt branches:", cond(x).tolist(), cond(-x).tolist())
print("linear.pt output shape:", tuple(lin(torch.randn(4, 10)).shape))
PY
)
rm -rf "$out"
echo "demo finished: registry in $REGCTL_HOME"
