"""The GO page: static HTML, CSS and JavaScript modules served by the app."""
