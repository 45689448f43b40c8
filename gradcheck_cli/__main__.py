from gradcheck_cli.cli import main

main()
