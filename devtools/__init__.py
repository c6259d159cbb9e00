"""Development and test tooling: local chains, deployment, child processes, the devnet.

Never imported by `backend/`, `listener/` or `signer/` (an import-linter contract holds it).
TEST/DEV ONLY: it uses the well-known public Anvil/Hardhat keys.
"""
