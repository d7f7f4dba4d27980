"""S3 driver tests, against moto on 127.0.0.1."""
