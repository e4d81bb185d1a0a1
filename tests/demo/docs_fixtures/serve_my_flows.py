"""`python serve_my_flows.py`: serves the flow (runs until stopped)."""

from my_flow import my_flow

if __name__ == "__main__":
    my_flow.serve(name="docs")
