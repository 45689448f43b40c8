from gradcheck_cli.run.entry import main

main()
