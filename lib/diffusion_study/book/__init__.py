"""The book's machinery: notebook runner, parameters, results, ledger, status, citation, plotting. Imports base and eval, never core."""
