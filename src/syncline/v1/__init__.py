"""Generated gRPC code for proto/syncline/v1 (scripts/gen-proto). DO NOT EDIT."""
