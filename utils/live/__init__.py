"""The live tagger of audio_tagger.py: features, sources, predictors, the tagger and its views."""
