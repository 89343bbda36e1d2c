"""The REST API: Flask app factory, flask-smorest blueprints, schemas and the one error envelope."""
