from signer.main import main

main()
