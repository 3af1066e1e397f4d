"""stackmind.tasks"""
