from gradcheck_cli.run.cli import main

main()
