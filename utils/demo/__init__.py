"""The embedded default dataset: real recorded sounds from public Debian packages, in FSDKaggle2018's layout."""
