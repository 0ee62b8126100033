"""Tests of the Helm chart in helm/demandsense (rendered offline with helm-python-sdk)."""
