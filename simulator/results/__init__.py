"""Results: tables and the typed step summary (tables), figures (plots), HTML reports (report) and Perfetto
traces (perfetto)."""
