from listener.main import main

main()
