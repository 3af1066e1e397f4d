"""What runs the agent to measure it or improve it: evaluation on goals with verifiers, policy trials
and grounding, practice, and the learning cycle. It sits above the agent: nothing the agent imports
imports this package."""
