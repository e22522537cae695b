#!/usr/bin/env bash
# Regenerate the hashed locks that scripts/setup.sh installs. Run after editing
# requirements.txt or the pins of requirements-nodeps.lock, then commit all three files.
#   requirements.lock         pip-compile (pip-tools) of requirements.txt: every package with
#                             its hashes, for Linux x86_64 / Python 3.11, resolved by pip with
#                             this machine's pip configuration, where torch 2.13.0 is the CPU
#                             wheel on disk (its dependencies, not PyPI's CUDA ones, are locked).
#                             Existing pins are kept unless requirements.txt asks otherwise.
#                             Then scripts/lock_torch.py pins torch as ==2.13.0 with the CPU wheel's
#                             hash and PyPI's cp311 wheels' hashes (installable from PyPI alone), and
#   requirements-cuda.lock    locks the CUDA libraries PyPI's Linux torch needs (from PyPI only).
#   requirements-nodeps.lock  what is installed without its dependencies (pip itself;
#                             animal-mnist, which declares TensorFlow): versions edited by
#                             hand, hashes rewritten here from the wheels pip downloads.
# Takes about 6 minutes on 2 cores (pip-tools builds some sdists' metadata).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT

"$PYTHON" -m venv "$tools/venv"
"$tools/venv/bin/python" -m pip install --quiet pip==26.3 pip-tools==7.6.2

CUSTOM_COMPILE_COMMAND="bash scripts/lock.sh" "$tools/venv/bin/pip-compile" --quiet \
    --generate-hashes --allow-unsafe --strip-extras \
    --no-emit-find-links --no-emit-index-url --no-emit-trusted-host \
    --output-file requirements.lock requirements.txt

# torch must be the CPU build: a CUDA build would drag nvidia-*/triton into the lock.
if ! grep -q '^torch==[^ ]*+cpu ' requirements.lock || grep -qiE '^(nvidia-|triton)' requirements.lock; then
    echo "lock.sh: torch did not resolve to the CPU wheel (is pip's find-links/cap configuration present?)" >&2
    exit 1
fi
"$tools/venv/bin/python" scripts/lock_torch.py "$tools/venv/bin/pip-compile"

"$tools/venv/bin/python" - "$tools/wheels" <<'EOF'
import hashlib, re, subprocess, sys
from pathlib import Path

lock, wheels = Path("requirements-nodeps.lock"), Path(sys.argv[1])
lines = lock.read_text().splitlines()
out = []
for line in lines:
    m = re.match(r"^([A-Za-z0-9._-]+)==([^\s\\]+)", line)
    if not m:
        out.append(line)
        continue
    name, version = m.groups()
    dest = wheels / name
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                    "-d", str(dest), f"{name}=={version}"], check=True)
    (wheel,) = dest.iterdir()
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    out.append(f"{name}=={version} --hash=sha256:{digest}")
lock.write_text("\n".join(out) + "\n")
EOF
echo "lock.sh: wrote requirements.lock, requirements-cuda.lock and requirements-nodeps.lock"
