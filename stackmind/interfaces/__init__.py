"""stackmind.interfaces"""
