"""MLflow bookkeeping: session and cell runs, server health, quoted searches, orphaned runs, claims."""
