"""Support for the Streamlit app: identity -> Actor, the one cached engine, cached queries,
friendly errors and the page registry. Pages import from here and from the package; they hold
no SQL and make no permission decisions of their own beyond hiding what the package would refuse.
"""
