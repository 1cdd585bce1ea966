"""Assets that connect the client-scoring DAGs."""
from airflow.sdk import Asset

NOTES = Asset(name="client_scoring_notes", uri="client_scoring://inputs/notes")
CONCEPTS = Asset(name="client_scoring_note_concepts", uri="client_scoring://inputs/note_concepts")
OUTCOMES = Asset(name="client_scoring_outcomes", uri="client_scoring://inputs/outcomes")
TRANSACTIONS = Asset(name="client_scoring_transactions", uri="client_scoring://inputs/transactions")
ELITE_PREDICTIONS = Asset(name="client_scoring_elite_predictions", uri="client_scoring://predictions/elite")
CHAMPIONS = Asset(name="client_scoring_champions", uri="client_scoring://models/champions")
DRIFT = Asset(name="client_scoring_drift", uri="client_scoring://drift")
